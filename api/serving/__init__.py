"""The request path: a body becomes images (inputs), is admitted or refused (admission,
shedding, deadline), becomes a job (jobs) coalesced into one Celery message (dispatch), and its
answer comes back on this process's subscription (results); `service.PredictionService` is
what the routes call. `oip` maps Open Inference Protocol tensors onto the same path."""
