"""Tools that use the collection from other software (MONAI Label)."""
