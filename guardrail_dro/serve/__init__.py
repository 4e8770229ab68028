"""Serving, bottom to top: the guard artifact and ONNX Runtime sessions; the scorer seam
(``scorer``: the Protocol and the shipped fake; ``onnx_scorer``: the real one); the
decision policy; scoring by windows; ``Guard``; and the chat rails (``rails/``)."""
