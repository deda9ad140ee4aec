"""Domain control validation (policy 3.2.7, BR 3.2.2.4) and CAA (BR 3.2.2.8, RFC 8659).

Each BR method is a small module named by its number; `gate.py` is the check every issuance
door named in `validation.enforce` runs before signing.
"""
