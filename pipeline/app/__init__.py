"""What the app and the CLI show, computed without Streamlit: previews, item rows, resource
history, terminal progress, the doctor's checks. Pages render these; threads never call ``st.*``."""
