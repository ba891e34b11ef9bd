"""The OpenAPI document's platform paths, one concrete path per configured platform.

`/api/cars/{platform}/` and `/api/cars/{id}/` are the same templated path to OpenAPI,
which forbids that: nothing tells a client (or Schemathesis) that `/api/cars/1/` is the
car, which Django answers, and not the list of a platform named "1". Concrete paths
win over templated ones, so `/api/cars/web/` and `/api/cars/web/{id}/` are unambiguous.
"""

import copy

from cars.pictures.platforms import get_platforms


def concrete_platform_paths(result: dict, **kwargs) -> dict:
    """drf-spectacular postprocessing hook (SPECTACULAR_SETTINGS)."""
    paths = {}
    for path, item in result["paths"].items():
        if "{platform}" not in path:
            paths[path] = item
            continue
        for name in get_platforms():
            concrete = copy.deepcopy(item)
            for operation in concrete.values():
                operation["operationId"] += f"_{name}"
                operation["parameters"] = [
                    p for p in operation["parameters"] if p["name"] != "platform"
                ]
            paths[path.replace("{platform}", name)] = concrete
    result["paths"] = paths
    return result
