"""Serving: the guard artifact, ONNX Runtime sessions, the decision policy, Guard, rails."""
