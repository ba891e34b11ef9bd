"""Everything about a stored picture: the catalogue's half of pictures by content.

- `platforms`: the client platforms (CARS_PLATFORMS) and their processor chains;
- `processors`: decoding and resizing, shared by imagekit and the renderer;
- `rendering`: every platform's rendition of an original, made once per picture;
- `store`: storing, sharing, re-rendering and releasing pictures by content;
- `more`: a car's further pictures (its `CarPicture` rows);
- `urls`: URLs of stored renditions, without a storage round trip;
- `reasons`: why a car has no picture (the image reason codes).

Getting the bytes (fetching, checking, the import's pipeline) is the importer's job.
"""
