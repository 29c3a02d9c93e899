"""What to tag: audio files, folders (searched recursively) and AudioSet-style json datafiles.

Folders contribute every file whose extension names a format libsndfile reads
(``soundfile.available_formats()``); a file named explicitly is always tried, whatever its
extension. A path that does not exist is kept, so the run reports it like any unreadable file.
"""
import os

import soundfile as sf

from ..data.datafile import read_datafile

__all__ = ["AUDIO_EXTENSIONS", "collect_inputs"]

AUDIO_EXTENSIONS = frozenset({f".{fmt.lower()}" for fmt in sf.available_formats()}
                             | {".aif", ".oga", ".opus"})


def _folder_files(folder):
    found = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        found += [os.path.join(root, f) for f in sorted(files)
                  if os.path.splitext(f)[1].lower() in AUDIO_EXTENSIONS and not f.startswith(".")]
    return found


def collect_inputs(paths):
    """``paths`` (a path or a list of them) -> list of file paths to tag, in the order given
    (folders sorted, datafiles in their listed order). ValueError when nothing is left."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    files = []
    for path in map(os.fspath, paths):
        if os.path.isdir(path):
            files += _folder_files(path)
        elif path.lower().endswith(".json") and os.path.isfile(path):
            files += [entry.wav for entry in read_datafile(path)]
        else:
            files.append(path)
    if not files:
        raise ValueError(f"no audio files found in {list(map(os.fspath, paths))} (folders are searched "
                         f"for {', '.join(sorted(AUDIO_EXTENSIONS))})")
    return files
