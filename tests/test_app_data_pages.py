"""AppTest of the Dataset and Spectral curves pages, from the entry file, on the tiny simulated demo."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from cropcore.data import layout

APP = str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py")
DATASET, CURVES = "app_pages/dataset.py", "app_pages/curves.py"


def shown(at: AppTest, text: str) -> bool:
    """True when ``text`` appears in a caption, markdown, badge or message of the page."""
    elements = [*at.caption, *at.markdown, *at.info, *at.warning, *at.error, *at.get("badge")]
    return any(text in str(getattr(element, "value", None) or getattr(element, "proto", "")) for element in elements)


@pytest.fixture
def app(sim_root: Path) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    assert not at.exception
    return at


def open_page(at: AppTest, page: str) -> AppTest:
    at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def test_dataset_page_on_the_demo_both_levels(app: AppTest, sim_root: Path) -> None:
    assert app.session_state["data_root"] == str(sim_root)
    assert shown(app, "Simulated data")
    assert len(app.dataframe) >= 1 and len(app.get("plotly_chart")) == 3
    app.radio(key="level").set_value("L2A").run()
    assert not app.exception
    assert shown(app, "Simulated data") and shown(app, "L2A")
    assert not app.warning  # every region readable


def test_curves_page_widgets(app: AppTest) -> None:
    at = open_page(app, CURVES)
    assert shown(at, "Simulated data") and len(at.get("plotly_chart")) == 2
    at.selectbox(key="curves_region").select("frh02").run()
    at.selectbox(key="curves_class").select("corn").run()
    assert not at.exception
    next(button for button in at.button if "Random" in button.label).click().run()
    assert not at.exception and at.session_state["curves_seed"] == 1
    assert at.selectbox(key="curves_parcel").value == at.session_state["curves_parcel"]
    for key in ("curves_hide_cloudy", "curves_show_grid", "curves_show_input"):
        at.toggle(key=key).set_value(True).run()
        assert not at.exception, key
    assert shown(at, "(hidden)")
    at.selectbox(key="curves_env_band").select("B8").run()
    at.multiselect(key="curves_env_classes").select("rapeseed").run()
    assert not at.exception
    at.radio(key="level").set_value("L2A").run()  # B8 exists at L2A; NDVI and L1C-only bands handled too
    assert not at.exception and len(at.get("plotly_chart")) == 2
    at.selectbox(key="curves_env_band").select("NDVI").run()
    assert not at.exception
    assert any("QA60" in expander.label for expander in at.expander)
    at = open_page(at, DATASET)
    assert len(at.get("plotly_chart")) == 3 and shown(at, "Simulated data")


def test_root_outside_the_data_folder_is_refused(app: AppTest, tmp_path: Path) -> None:
    app.radio(key="source").set_value("Downloaded data").run()
    app.text_input(key="sidebar_root_text").input(str(tmp_path.parent)).run()
    assert not app.exception
    assert any("outside the data folder" in error.value for error in app.error)
    assert not shown(app, "Simulated data")


def test_missing_and_unreadable_files_are_messages(app: AppTest, sim_root: Path) -> None:
    broken = layout.data_dir() / "broken-copy"
    if not broken.exists():
        shutil.copytree(sim_root, broken, ignore=shutil.ignore_patterns(".cache", layout.SIMULATED_MARKER))
        (layout.h5_path(broken, "frh04", "L1C")).write_bytes(b"not an hdf5 file")
        layout.index_path(broken, "frh03", "L1C").unlink()
    app.radio(key="source").set_value("Downloaded data").run()
    app.text_input(key="sidebar_root_text").input("broken-copy").run()
    assert not app.exception
    assert not shown(app, "Simulated data")
    assert any("cropcore download --region frh03 --level L1C" in code.value for code in app.code)
    assert any("FRH04" in warning.value for warning in app.warning)
    at = open_page(app, CURVES)
    at.selectbox(key="curves_region").select("frh04").run()
    assert not at.exception and at.error
    assert any("cropcore download --region frh04" in code.value for code in at.code)
