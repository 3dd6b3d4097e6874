"""File formats: readers and writers. They turn files into framework-layout arrays and back."""

__all__: list[str] = []
