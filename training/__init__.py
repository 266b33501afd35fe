"""Training pipeline: MNIST -> Keras CNN -> ONNX export -> versioned folder in the registry."""
