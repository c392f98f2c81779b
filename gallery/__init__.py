"""The studio's storage: input images, runs and their files, and the job queue, in one data
folder indexed by an SQLite database (see store.py). Never imports torch."""
from gallery.errors import GalleryError, NotFound
from gallery.models import InputImage, Run
from gallery.paths import DATA_ENV, as_run_id, data_dir_path, resolve_data_dir
from gallery.queries import SORTS, RunFilter
from gallery.store import Gallery

__all__ = ["DATA_ENV", "SORTS", "Gallery", "GalleryError", "InputImage", "NotFound", "Run", "RunFilter",
           "data_dir_path", "resolve_data_dir", "as_run_id"]
