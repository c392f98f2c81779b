"""Errors the gallery raises; messages are meant to be shown to a person as they are."""


class GalleryError(Exception):
    """The gallery cannot do what was asked (bad data folder, bad id, wrong state)."""


class NotFound(GalleryError, KeyError):
    """No run or input image with that id."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else "not found"
