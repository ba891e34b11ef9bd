"""Who may start an import, in one place for the admin and the imports API.

Starting an import is the `imports.add_importjob` permission, reading jobs is
`imports.view_importjob`, and pruning deletes cars, so it also needs `cars.delete_car`.
Staff status alone grants nothing: it only lets a user into the admin at all.
"""

START_IMPORT = "imports.add_importjob"
VIEW_IMPORTS = ("imports.view_importjob", "imports.change_importjob")
PRUNE = "cars.delete_car"


def may_start_import(user, *, prune: bool = False) -> bool:
    if not (user.is_active and user.is_staff and user.has_perm(START_IMPORT)):
        return False
    return not prune or user.has_perm(PRUNE)


def may_view_imports(user) -> bool:
    return user.is_active and user.is_staff and any(user.has_perm(p) for p in VIEW_IMPORTS)
