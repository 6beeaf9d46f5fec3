"""OpenAI's Files and Batch APIs: durable records, line validation, and the Ray Data pipeline that runs a batch.

Nothing here imports FastAPI or the model deployments: the runner reaches the models through the
app's own handle (serve_app.batch.dataflow), and the Ingress reaches the runner through its handle.
"""
