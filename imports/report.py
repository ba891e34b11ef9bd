"""What an import did: counts, rejected rows and image failures (SPEC §4 `--report`)."""

from dataclasses import asdict, dataclass, field


@dataclass
class Counts:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    rejected: int = 0
    images_ok: int = 0
    images_failed: int = 0


@dataclass
class Pictures:
    """Cars whose picture was new (stored by this import) or shared (stored before)."""

    new: int = 0
    shared: int = 0


@dataclass(frozen=True)
class RowProblem:
    line: int
    reason: str
    message: str


@dataclass(frozen=True)
class ImageProblem:
    line: int
    key: str
    url: str
    reason: str
    message: str


@dataclass
class ImportReport:
    source: str
    dry_run: bool = False
    counts: Counts = field(default_factory=Counts)
    pictures: Pictures = field(default_factory=Pictures)
    rejected_rows: list[RowProblem] = field(default_factory=list)
    image_failures: list[ImageProblem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    encoding: str = ""  # the source's, as detected or declared
    mapping: dict = field(default_factory=dict)  # field -> column or template, attributes
    # Seconds spent: applying rows, the whole image phase, the fetch window and the batch
    # writes in it, and this process's CPU in it (the render processes' not counted).
    timings: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "source": self.source,
            "dry_run": self.dry_run,
            "encoding": self.encoding,
            "mapping": dict(self.mapping),
            "counts": asdict(self.counts),
            "pictures": asdict(self.pictures),
            "rejected_rows": [asdict(r) for r in self.rejected_rows],
            "image_failures": [asdict(f) for f in self.image_failures],
            "warnings": list(self.warnings),
            "timings": dict(self.timings),
        }

    def feed(self) -> dict:
        """How the source was read, as a job keeps it."""
        return {"encoding": self.encoding, "mapping": dict(self.mapping)}

    def summary(self) -> str:
        c = self.counts
        return (
            f"created {c.created}, updated {c.updated}, unchanged {c.unchanged}, "
            f"deleted {c.deleted}, rejected {c.rejected} rows; "
            f"images: {c.images_ok} ok, {c.images_failed} failed"
        )
