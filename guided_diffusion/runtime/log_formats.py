"""
The logger's outputs: boxed tables (stdout, `log.txt`), `progress.csv`, `progress.json` and
TensorBoard, each built by name with `make_output_format`.

With `append=True` an output continues the file already there instead of truncating it: a CSV
keeps its one header (read back from the file), and a last row cut short by a crash is dropped.
`discard_rows(key, start)` removes the rows whose `key` is >= `start`, so a run resumed at step
`start` neither loses nor repeats rows. Table files are rewritten atomically (temp file + rename),
never truncated in place, so a kill at any moment leaves the old rows or the new ones.
"""

import json
import os
import sys

from .fileio import atomic_write

KNOWN_FORMATS = ("stdout", "log", "csv", "json", "tensorboard")


class KVWriter:
    """An output that records dicts of key -> value."""

    def writekvs(self, kvs):
        raise NotImplementedError

    def discard_rows(self, key, start):
        """Remove recorded rows whose `key` is a number >= `start` (outputs that cannot: no-op)."""

    def close(self):
        pass


class SeqWriter:
    """An output that records free-text lines."""

    def writeseq(self, seq):
        raise NotImplementedError


class HumanOutputFormat(KVWriter, SeqWriter):
    """Boxed key/value tables and plain text lines, to a file path or an open stream."""

    def __init__(self, filename_or_file, append=False):
        if isinstance(filename_or_file, str):
            self.file = open(filename_or_file, "at" if append else "wt")
            self.own_file = True
        else:
            if not hasattr(filename_or_file, "write"):
                raise ValueError(f"expected a file path or a writable stream, got {filename_or_file!r}")
            self.file = filename_or_file
            self.own_file = False

    def writekvs(self, kvs):
        key2str = {}
        for key, val in sorted(kvs.items()):
            valstr = "%-8.3g" % val if hasattr(val, "__float__") else str(val)
            key2str[self._truncate(key)] = self._truncate(valstr)
        if not key2str:
            print("WARNING: tried to write empty key-value dict")
            return
        keywidth = max(map(len, key2str.keys()))
        valwidth = max(map(len, key2str.values()))
        dashes = "-" * (keywidth + valwidth + 7)
        lines = [dashes]
        for key, val in sorted(key2str.items(), key=lambda kv: kv[0].lower()):
            lines.append("| %s%s | %s%s |" % (key, " " * (keywidth - len(key)), val, " " * (valwidth - len(val))))
        lines.append(dashes)
        self.file.write("\n".join(lines) + "\n")
        self.file.flush()

    @staticmethod
    def _truncate(s, maxlen=30):
        return s[: maxlen - 3] + "..." if len(s) > maxlen else s

    def writeseq(self, seq):
        self.file.write(" ".join(seq) + "\n")
        self.file.flush()

    def close(self):
        if self.own_file:
            self.file.close()


def _read_lines(path):
    """
    :return: (the lines of `path` that end in a newline, whether a last line cut short by a
        crash was left out); ([], False) when the file does not exist.
    """
    if not os.path.exists(path):
        return [], False
    with open(path, "rt") as f:
        lines = f.readlines()
    if lines and not lines[-1].endswith("\n"):
        return lines[:-1], True
    return lines, False


def _replace_lines(path, lines):
    atomic_write(path, lambda f: f.writelines(lines), binary=False)


def _number_at_least(text, start):
    try:
        return float(text) >= start
    except (TypeError, ValueError):
        return False


class _TableFile(KVWriter):
    """A file of one line per row, appended to; rewritten whole (atomically) when rows change."""

    def __init__(self, filename, append=False):
        self.filename = filename
        lines, cut = _read_lines(filename) if append else ([], False)
        if cut or not append:
            _replace_lines(filename, lines)
        self.file = open(filename, "at")
        self.on_open(lines)

    def on_open(self, lines):
        """Called with the file's rows once it is open."""

    def rewrite(self, edit):
        """Replace the file's lines by `edit(lines)`."""
        self.file.close()
        lines = _read_lines(self.filename)[0]
        edited = edit(lines)
        if edited != lines:
            _replace_lines(self.filename, edited)
        self.file = open(self.filename, "at")

    def close(self):
        self.file.close()


class JSONOutputFormat(_TableFile):
    """One JSON object per `dumpkvs` call, one per line."""

    def writekvs(self, kvs):
        row = {k: (float(v) if hasattr(v, "dtype") else v) for k, v in sorted(kvs.items())}
        self.file.write(json.dumps(row) + "\n")
        self.file.flush()

    def discard_rows(self, key, start):
        def keep(line):
            try:
                value = json.loads(line).get(key)
            except ValueError:
                return True
            return not _number_at_least(value, start)

        self.rewrite(lambda lines: [line for line in lines if keep(line)])


class CSVOutputFormat(_TableFile):
    """A CSV table with one header; when new keys appear, the header is extended and old rows padded."""

    sep = ","

    def on_open(self, lines):
        self.keys = lines[0].rstrip("\n").split(self.sep) if lines else []

    def writekvs(self, kvs):
        extra_keys = sorted(kvs.keys() - set(self.keys))
        if extra_keys:
            self.keys.extend(extra_keys)
            header = self.sep.join(self.keys) + "\n"
            pad = self.sep * len(extra_keys)
            self.rewrite(lambda lines: [header] + [line.rstrip("\n") + pad + "\n" for line in lines[1:]])
        values = ["" if kvs.get(k) is None else str(kvs.get(k)) for k in self.keys]
        self.file.write(self.sep.join(values) + "\n")
        self.file.flush()

    def discard_rows(self, key, start):
        if key not in self.keys:
            return
        column = self.keys.index(key)

        def keep(line):
            fields = line.rstrip("\n").split(self.sep)
            return column >= len(fields) or not _number_at_least(fields[column], start)

        self.rewrite(lambda lines: lines[:1] + [line for line in lines[1:] if keep(line)])


class TensorBoardOutputFormat(KVWriter):
    """Scalars into a TensorBoard event directory (requires the `tensorboard` package)."""

    def __init__(self, dir):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:  # pragma: no cover - depends on optional package
            raise ValueError("log format 'tensorboard' needs the 'tensorboard' package (pip install tensorboard)") from e
        self.writer = SummaryWriter(dir)
        self.step = 0

    def writekvs(self, kvs):
        for k, v in kvs.items():
            if hasattr(v, "__float__"):
                self.writer.add_scalar(k, float(v), self.step)
        self.writer.flush()
        self.step += 1

    def close(self):
        self.writer.close()


def make_output_format(format, ev_dir, log_suffix="", append=False):
    """
    Build one output by name.

    :param format: one of KNOWN_FORMATS.
    :param ev_dir: directory for file outputs (created if missing).
    :param log_suffix: appended to file names, e.g. "-rank001".
    :param append: continue existing files (log, csv, json) instead of truncating them.
    """
    os.makedirs(ev_dir, exist_ok=True)
    if format == "stdout":
        return HumanOutputFormat(sys.stdout)
    if format == "log":
        return HumanOutputFormat(os.path.join(ev_dir, "log%s.txt" % log_suffix), append=append)
    if format == "json":
        return JSONOutputFormat(os.path.join(ev_dir, "progress%s.json" % log_suffix), append=append)
    if format == "csv":
        return CSVOutputFormat(os.path.join(ev_dir, "progress%s.csv" % log_suffix), append=append)
    if format == "tensorboard":
        return TensorBoardOutputFormat(os.path.join(ev_dir, "tb%s" % log_suffix))
    raise ValueError(f"Unknown format specified: {format!r}; allowed: {', '.join(KNOWN_FORMATS)}")
