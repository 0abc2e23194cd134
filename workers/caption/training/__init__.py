"""Fitting the caption models: v1 linear (`linear`, scikit-learn), v2/v3 adapters
(`adapter`, torch), labelled caption data (`data`) and the evaluation figures (`metrics`)."""
