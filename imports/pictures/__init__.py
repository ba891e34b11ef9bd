"""A car's picture, from its reference to its outcome on the car: fetching (safe HTTP),
checking the bytes (images), the reason codes, the pipeline that renders and records them,
and retrying failures. Storing and rendering primitives belong to the models that own
them (cars.pictures, cars.renditions)."""
