"""The response cache (Redis): key scheme and record format shared by writer and reader."""
