"""HTTP applications of the backend (Starlette): the public repository and the RA/admin API."""
