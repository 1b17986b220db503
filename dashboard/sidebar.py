"""The shared sidebar: data source, level, the simulated-data label, and helpers every page uses.

Session keys: "source", "data_root" (resolved root as a string, "" when unusable), "level";
page-specific keys carry the page's prefix (e.g. "curves_parcel").
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import streamlit as st

from cropcore.constants import LEVELS
from cropcore.data import layout
from dashboard import loaders

DEMO = "Simulated demo"
DOWNLOADED = "Downloaded data"
SIMULATED_LABEL = "Simulated data"
ROOT_INPUT_KEY = "sidebar_root_text"


def init_state() -> None:
    """Give every shared and page key its default once per session."""
    st.session_state.setdefault("source", DEMO)
    st.session_state.setdefault("data_root", "")
    st.session_state.setdefault("level", LEVELS[0])
    st.session_state.setdefault(ROOT_INPUT_KEY, str(layout.default_root()))
    st.session_state.setdefault("curves_seed", 0)


def resolve_root(text: str) -> Path:
    """A typed root resolved against the data folder; ValueError when it points outside it."""
    return loaders.inside_data_folder(text, "put downloads under it (set CROPCORE_DATA to move it).")


def render() -> None:
    """Draw the sidebar and store the chosen root and level in session state."""
    with st.sidebar:
        st.header("Data")
        source = st.radio("Source", (DEMO, DOWNLOADED), key="source")
        root = _demo_root() if source == DEMO else _downloaded_root()
        st.session_state["data_root"] = str(root) if root else ""
        st.radio("Level", LEVELS, key="level", horizontal=True,
                 help="L1C: top-of-atmosphere reflectance, 13 bands. L2A: bottom-of-atmosphere (MAJA), 10 bands.")
        if root is not None and layout.is_simulated(root):
            st.badge(SIMULATED_LABEL, icon=":material/science:", color="orange")
            st.caption("Simulated Brittany in the official layout, not real Sentinel-2 observations.")
        st.button("Reload data", on_click=loaders.clear_caches, help="Forget cached data after files changed.")


def _demo_root() -> Path:
    return Path(loaders.demo_data_root(str(layout.data_dir()), os.environ.get("CROPCORE_DEMO_SCALE")))


def _downloaded_root() -> Path | None:
    text = st.text_input("Root folder", key=ROOT_INPUT_KEY, help=f"Inside the data folder {layout.data_dir()}")
    try:
        root = resolve_root(text)
    except ValueError as error:
        st.error(str(error))
        return None
    inventory = loaders.file_inventory(root)
    with st.expander("Files present", expanded=not inventory["missing"].eq("").all()):
        st.dataframe(inventory.drop(columns="missing"), hide_index=True)
        missing = inventory.loc[inventory["missing"] != "", "missing"]
        if len(missing):
            st.caption("Fetch what is missing with:")
            st.code("\n".join(missing), language="bash")
    return root


def active_root() -> Path | None:
    """The root chosen in the sidebar, or None when the typed one is unusable."""
    return Path(st.session_state["data_root"]) if st.session_state.get("data_root") else None


def active_level() -> str:
    return str(st.session_state.get("level", LEVELS[0]))


def require_root() -> tuple[Path, str]:
    """The active root and level; stops the page with a message when no usable root is chosen."""
    root = active_root()
    if root is None:
        st.info("Choose a usable data root in the sidebar.")
        st.stop()
    return root, active_level()


def keep_valid(key: str, options: Sequence[object], fallback: object) -> None:
    """Before a widget is drawn: reset its stored value when the current options no longer hold it."""
    if st.session_state.get(key) not in options:
        st.session_state[key] = fallback


def page_caption() -> None:
    """The line under a page title: the data shown, labelled simulated when it is."""
    root, level = active_root(), active_level()
    if root is not None and layout.is_simulated(root):
        st.caption(f":orange-badge[:material/science: {SIMULATED_LABEL}] {level} · {root}")
    else:
        st.caption(f"{level} · {root}")


def show_data_error(error: Exception, root: Path | str, region: str, level: str) -> None:
    """A data problem as a message with the command that fetches the files, never a traceback."""
    st.error(f"Cannot read {region.upper()} {level}: {error}")
    st.code(loaders.download_command(root, region, level), language="bash")


@contextmanager
def data_errors(root: Path | str, region: str, level: str) -> Iterator[None]:
    """Show expected data errors inside the block as messages and stop the page."""
    try:
        yield
    except loaders.DATA_ERRORS as error:
        show_data_error(error, root, region, level)
        st.stop()
