"""Streamlit-side helpers shared by the app's pages (the only place besides pages/ that imports streamlit)."""
