"""The shared Keras trainer: data, vectorizer, embeddings, model and ``train()``; no Ray, no MLflow."""
