"""cropcore dashboard entry point: page config, the shared sidebar, navigation.

Run with ``streamlit run dashboard/app.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # streamlit puts only dashboard/ on the path
    sys.path.insert(0, str(REPO))

import streamlit as st  # noqa: E402

from dashboard import sidebar  # noqa: E402

st.set_page_config(page_title="cropcore", page_icon=":material/agriculture:", layout="wide")
sidebar.init_state()

PAGES_DIR = Path(__file__).parent / "app_pages"
navigation = st.navigation(
    [
        st.Page(PAGES_DIR / "dataset.py", title="Dataset", icon=":material/table_chart:", default=True),
        st.Page(PAGES_DIR / "curves.py", title="Spectral curves", icon=":material/show_chart:"),
        st.Page(PAGES_DIR / "train.py", title="Train", icon=":material/model_training:"),
        st.Page(PAGES_DIR / "map.py", title="Map", icon=":material/map:"),
        st.Page(PAGES_DIR / "errors.py", title="Errors", icon=":material/troubleshoot:"),
    ]
)
sidebar.render()
navigation.run()
