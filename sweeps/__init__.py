"""Sweep files -> Ray Tune trials -> MLflow runs -> the report. Imports ``trainer``, never the reverse."""
