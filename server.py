"""What `make run` and `make share` serve: the studio's Streamlit app (streamlit_app.py) with the
share-mode gate in front of Streamlit's own server (app_pages/gate.py; outside share mode it lets
everything through). `streamlit run server.py` finds `app` and serves it."""
from pathlib import Path

import streamlit as st
from starlette.middleware import Middleware

from app_pages.gate import ShareGate

app = st.App(Path(__file__).resolve().parent / "streamlit_app.py", middleware=[Middleware(ShareGate)])
