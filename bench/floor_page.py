"""The floor for time to first chart: a one-chart Streamlit page, the newest run's batch loss in `st.plotly_chart`.

Served beside the dashboard by bench/first_chart.py (`streamlit run bench/floor_page.py` with KERASCOPE_LOGDIR set).
"""

import os

import plotly.graph_objects as go
import streamlit as st

from kerascope import RunStore

run = RunStore(os.environ["KERASCOPE_LOGDIR"]).runs()[0]
batches = run.batch_metrics()
st.plotly_chart(go.Figure(go.Scatter(x=batches["step"], y=batches["loss"], name="loss")), key="loss")
