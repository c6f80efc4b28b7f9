"""explore: the interactive page on the softmax math and the trained model (a JSON API + assets)."""
