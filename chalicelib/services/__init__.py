"""Use cases, one module per area. Each takes primitives (parsed JSON) plus
:class:`~chalicelib.container.Deps` and returns plain data; HTTP statuses
are the api layer's business."""
