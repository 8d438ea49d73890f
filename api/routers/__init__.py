"""One router per resource, each with its own response models; ``api.main`` includes them."""
