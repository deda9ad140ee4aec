"""Presigning OCSP responses: the pure planner and the presigner that signs and writes to Redis."""
