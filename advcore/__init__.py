"""advcore: the AdvLab core library (data, models, attacks, evaluation); no Streamlit here."""
