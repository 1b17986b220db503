"""The cropcore Streamlit dashboard: pages lay out, builders compute, one module caches."""
