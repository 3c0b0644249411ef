"""MONAI Label app of the collection: MONAI Label's ``monaibundle`` app plus suspect-label review (see main.py)."""
