"""Kerascope's dashboard: a Streamlit app over a runs directory (`python -m kerascope --logdir runs`)."""
