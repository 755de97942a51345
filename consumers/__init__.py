"""The prediction path: the prediction consumer, providers, routing, and the monitor."""
