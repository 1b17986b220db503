"""Train page: launch `cropcore train` in the background, watch runs live, cancel them."""

from __future__ import annotations

import streamlit as st

from cropcore import models
from cropcore.constants import LEVELS
from cropcore.training.protocol import FOLDS, MODES, TABLE2_MODE
from dashboard import launch, loaders, model_charts, runs_view, sidebar

MODEL_CHOICES: tuple[str, ...] = (*models.NAMES, launch.RANDOM_FOREST)
LIVE_SECONDS = 2


def model_defaults(name: str) -> dict[str, float | int]:
    """The paper's epochs, learning rate and weight decay of a network (RF: not used)."""
    if name == launch.RANDOM_FOREST:
        return {"train_epochs": 1, "train_lr": 1e-3, "train_wd": 0.0}
    spec = models.find_spec(name)
    return {"train_epochs": int(spec.epochs), "train_lr": float(spec.learning_rate),
            "train_wd": float(spec.weight_decay)}


def apply_model_defaults() -> None:
    """Prefill the form with the chosen model's paper values (widget callback)."""
    st.session_state.update(model_defaults(st.session_state["train_model"]))


def apply_quick_demo() -> None:
    """The quick preset: a small network, few epochs, Table 2 split (about a minute on 2 cores)."""
    st.session_state["train_model"] = launch.QUICK_DEMO["model"]
    apply_model_defaults()
    st.session_state["train_epochs"] = launch.QUICK_DEMO["epochs"]
    st.session_state["train_batch_size"] = launch.QUICK_DEMO["batch_size"]
    st.session_state["train_mode"] = TABLE2_MODE


def init_state() -> None:
    st.session_state.setdefault("train_model", "TempCNN")
    st.session_state.setdefault("train_level", sidebar.active_level())
    st.session_state.setdefault("train_mode", TABLE2_MODE)
    st.session_state.setdefault("train_batch_size", 1024)
    st.session_state.setdefault("train_seed", 0)
    for key, value in model_defaults(st.session_state["train_model"]).items():
        st.session_state.setdefault(key, value)


def launch_form() -> None:
    """The training form and its Launch button."""
    root, _ = sidebar.require_root()
    st.subheader("New run")
    st.button("Quick demo preset", on_click=apply_quick_demo, key="train_quick",
              help="TempCNN, 3 epochs: about a minute on 2 cores.")
    left, middle, right = st.columns(3)
    model = left.selectbox("Model", MODEL_CHOICES, key="train_model", on_change=apply_model_defaults)
    left.radio("Level", LEVELS, key="train_level", horizontal=True)
    middle.selectbox("Mode", MODES, key="train_mode",
                     format_func=lambda mode: f"{mode}: train {', '.join(FOLDS[mode].train).upper()} → "
                                              f"test {FOLDS[mode].test.upper()}")
    network = model != launch.RANDOM_FOREST
    middle.number_input("Epochs", 1, 1000, key="train_epochs", disabled=not network)
    middle.number_input("Batch size", 8, 65536, step=128, key="train_batch_size", disabled=not network)
    right.number_input("Learning rate", 1e-6, 1.0, key="train_lr", format="%.2e", disabled=not network)
    right.number_input("Weight decay", 0.0, 1.0, key="train_wd", format="%.2e", disabled=not network)
    right.number_input("Seed", 0, 2**31 - 1, key="train_seed")
    if st.button("Launch training", type="primary", key="train_launch"):
        request = launch.TrainRequest(
            model=model, level=st.session_state["train_level"], mode=st.session_state["train_mode"],
            root=str(root), out=str(loaders.runs_root()), epochs=int(st.session_state["train_epochs"]),
            batch_size=int(st.session_state["train_batch_size"]), learning_rate=float(st.session_state["train_lr"]),
            weight_decay=float(st.session_state["train_wd"]), seed=int(st.session_state["train_seed"]),
        )
        started = launch.launch(request)
        st.session_state["train_watch"] = None
        st.success(f"Started {model} (process {started.pid}); it keeps running if you close this tab.")


@st.fragment(run_every=LIVE_SECONDS)
def runs_panel() -> None:
    """The runs list and the live view of one run, refreshed every few seconds."""
    launch.reap_children()
    runs = runs_view.list_runs(loaders.runs_root())
    st.subheader("Runs")
    if not runs:
        st.caption(f"No runs yet in {loaders.runs_root()}.")
        return
    table = runs_view.runs_table(runs)
    st.dataframe(table, hide_index=True, column_config={
        label: st.column_config.NumberColumn(format="%.3f") for _, label in runs_view.PAPER_METRICS})
    watchable = [run for run in runs if run.readable]
    if not watchable:
        return
    live = [run for run in watchable if run.state in ("running", runs_view.STARTING)]
    labels = [run.run_id for run in watchable]
    current = st.session_state.get("train_watch")
    if current not in labels:
        st.session_state["train_watch"] = (live or watchable)[0].run_id
    chosen = st.selectbox("Watch run", labels, key="train_watch")
    run_details(next(run for run in watchable if run.run_id == chosen))


def run_details(run: runs_view.RunInfo) -> None:
    """Progress, ETA, curves and the cancel button of one run."""
    if run.state == runs_view.STARTING:
        st.info(f"{run.model}: starting (process {run.pid})…")
        return
    status_line = f"**{run.state}** · {run.model} · {run.level} · {run.mode}"
    if run.epochs:
        fraction = min((run.epoch or 0) / run.epochs, 1.0)
        st.progress(fraction, text=f"{status_line} · epoch {run.epoch or 0}/{run.epochs}"
                                   f" · ETA {runs_view.format_eta(run.eta_seconds) if run.state == 'running' else '–'}")
    else:
        st.markdown(status_line)
    if run.error:
        st.error(run.error)
    if run.state == "running":
        if (run.path / "cancel").exists():
            st.caption("Cancel requested: the run stops after its current batch.")
        elif st.button("Cancel run", key="train_cancel"):
            launch.request_cancel(run.path)
            st.rerun(scope="fragment")
    log = runs_view.read_log(run.path)
    if log.empty:
        st.caption("No epoch finished yet.")
        return
    left, right = st.columns(2)
    left.plotly_chart(model_charts.loss_figure(log), key="train_loss_chart")
    right.plotly_chart(model_charts.score_figure(log), key="train_score_chart")


st.title("Train")
sidebar.page_caption()
init_state()
launch_form()
runs_panel()
