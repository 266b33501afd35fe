"""The HTTP API: validates and normalises images, enqueues them, waits for results.

Never imports TensorFlow, ONNX Runtime or the `workers` package (a test checks it).
"""
