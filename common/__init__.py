"""Code shared by the API, the workers, training and evaluation (no TensorFlow here)."""
