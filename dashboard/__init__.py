"""The operator dashboard (Streamlit): reads the store and the live service's files; imports analytics, never maskwatch."""
