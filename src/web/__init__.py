"""The local web page (``python -m src.app``): example scenes, the request handler behind the
page (one image + typed classes -> the files ``src.predict`` writes) and the Gradio layout."""
