"""Records for auditors (policy 5.5): the export with its manifest and audit hash chain
(`export.py`, `chain.py`), its verification (`verify.py`) and retention (`retention.py`)."""
