"""A papermill engine that runs a notebook's cells in the stage's own process.

A DVC stage is one process that runs one notebook. papermill's default engine starts a Jupyter
kernel for it: a second Python process, ZeroMQ sockets, a heartbeat and a shutdown, about a
second of every stage on this CPU before any cell runs. A stage needs none of that (nothing
is interactive, nothing outlives the run), so :class:`InProcessEngine` executes the cells with
an IPython shell inside the stage's process instead. The executed notebook has the same cells
and the same kinds of outputs as with a kernel: streams, rich displays (Markdown, tables,
inline matplotlib figures), execution results and error tracebacks; a failing cell stops the
run and papermill raises ``PapermillExecutionError`` for it, as with a kernel.

Every log line is written once to the stage's own stdout/stderr as it happens (DVC shows it)
and kept in the cell's outputs. ``python -m nvr.notebook --engine kernel`` (or
``NVR_NOTEBOOK_ENGINE=kernel``) runs a real kernel instead.
"""

from __future__ import annotations

import functools
import sys

ENGINE_NAME = "nvr-inprocess"


class _CellStream:
    """``sys.stdout`` / ``sys.stderr`` while a notebook runs: each write goes to the real stream
    at once and into the running cell's outputs. One object for the whole run, so a logging
    handler or progress bar created in one cell still writes into whichever cell runs later."""

    def __init__(self, name: str, real):
        self.name, self.real, self.outputs = name, real, None
        self.encoding = getattr(real, "encoding", "utf-8") or "utf-8"
        self.errors = getattr(real, "errors", "strict")

    def write(self, text) -> int:
        if not isinstance(text, str):
            text = str(text)
        if self.real is not None:
            self.real.write(text)
        if self.outputs is not None and text:
            last = self.outputs[-1] if self.outputs else None
            if last is not None and last.get("output_type") == "stream" and last.get("name") == self.name:
                last["text"] += text
            else:
                self.outputs.append({"output_type": "stream", "name": self.name, "text": text})
        return len(text)

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if self.real is not None:
            self.real.flush()

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self.real.fileno()

    def readable(self) -> bool:
        return False

    def writable(self) -> bool:
        return True


@functools.lru_cache(maxsize=None)
def _shell_class():
    """The IPython shell class a stage runs its cells in (built once: IPython's shells are singletons)."""
    from IPython.core.display_trap import DisplayTrap
    from IPython.core.displayhook import DisplayHook
    from IPython.core.displaypub import DisplayPublisher
    from IPython.core.interactiveshell import InteractiveShell

    class Publisher(DisplayPublisher):
        """display(...) calls: display_data outputs of the running cell."""

        outputs = None

        def publish(self, data, metadata=None, source=None, *, transient=None, update=False):
            if self.outputs is not None:
                self.outputs.append({"output_type": "display_data", "data": data, "metadata": metadata or {}})

        def clear_output(self, wait=False):
            if self.outputs is not None:
                self.outputs.clear()

    class Hook(DisplayHook):
        """The value of a cell's last expression: the cell's execute_result (a trailing ';' hides it)."""

        outputs = None
        count = 0

        def __call__(self, result=None):
            if result is None or self.outputs is None or self.quiet():
                return
            data, md = self.shell.display_formatter.format(result)
            self.outputs.append({"output_type": "execute_result", "data": data, "metadata": md,
                                 "execution_count": self.count})

    class StageShell(InteractiveShell):
        def enable_gui(self, gui=None):
            """No GUI event loop: figures are inline (``%matplotlib inline``), as in a kernel."""

        def _showtraceback(self, etype, evalue, stb):
            if self.display_pub.outputs is not None:
                self.display_pub.outputs.append({"output_type": "error", "ename": etype.__name__,
                                                 "evalue": str(evalue), "traceback": list(stb)})

        def init_display_pub(self):
            self.display_pub = Publisher(shell=self, parent=self)
            self.configurables.append(self.display_pub)

        def init_displayhook(self):
            self.displayhook = Hook(shell=self, cache_size=0, parent=self)
            self.configurables.append(self.displayhook)
            self.display_trap = DisplayTrap(hook=self.displayhook)

    return StageShell


def _shell():
    """A fresh IPython shell for one notebook run: empty namespace, no history file, plain tracebacks."""
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    cfg = Config()
    cfg.HistoryManager.enabled = False
    cfg.InteractiveShell.colors = "nocolor"
    cls = _shell_class()
    if InteractiveShell.initialized():
        if not isinstance(InteractiveShell.instance(), cls):
            raise RuntimeError("an IPython shell is already running in this process; "
                               "run the notebook with engine='kernel'")
        cls.clear_instance()
    inline = sys.modules.get("matplotlib_inline.backend_inline")
    if inline is not None:   # it sets up figure formats once per process; a new shell needs them again
        inline.configure_inline_support.current_backend = "unset"
    return cls.instance(config=cfg)


def usable() -> bool:
    """Whether cells can run in this process: not inside another IPython shell (a Jupyter kernel or
    an IPython terminal calling :func:`nvr.notebook.run_notebook`), whose session must not be replaced."""
    if "IPython" not in sys.modules:
        return True
    from IPython.core.interactiveshell import InteractiveShell

    return not InteractiveShell.initialized() or isinstance(InteractiveShell.instance(), _shell_class())


def _output_node(o: dict):
    import nbformat

    return nbformat.from_dict(o)


def execute_cells(nb_man, stdout_file=None, stderr_file=None) -> None:
    """Run every code cell of ``nb_man.nb`` in order (papermill has already changed to the run's
    working directory), stopping at the first failing cell."""
    shell = _shell()
    out = _CellStream("stdout", stdout_file if stdout_file is not None else sys.stdout)
    err = _CellStream("stderr", stderr_file if stderr_file is not None else sys.stderr)
    saved = sys.stdout, sys.stderr
    count = 0
    try:
        sys.stdout, sys.stderr = out, err
        for index, cell in enumerate(nb_man.nb.cells):
            nb_man.cell_start(cell, index)
            failed = False
            try:
                if cell.cell_type != "code":
                    continue
                outputs: list = []
                out.outputs = err.outputs = shell.display_pub.outputs = shell.displayhook.outputs = outputs
                if cell.source.strip():
                    count += 1
                    shell.displayhook.count = shell.execution_count = count   # tracebacks say "In [count]"
                    result = shell.run_cell(cell.source, store_history=False, silent=False)
                    if result.error_before_exec is not None or result.error_in_exec is not None:
                        if not any(o["output_type"] == "error" for o in outputs):
                            exc = result.error_in_exec or result.error_before_exec
                            outputs.append({"output_type": "error", "ename": type(exc).__name__,
                                            "evalue": str(exc), "traceback": [f"{type(exc).__name__}: {exc}"]})
                        failed = True
                    cell.execution_count = count
                else:
                    cell.execution_count = None
                out.flush(), err.flush()
                cell.outputs = [_output_node(o) for o in outputs]
                if failed:
                    error = next(o for o in outputs if o["output_type"] == "error")
                    nb_man.cell_exception(cell, cell_index=index,
                                          exception=RuntimeError(f"{error['ename']}: {error['evalue']}"))
            finally:
                out.outputs = err.outputs = shell.display_pub.outputs = shell.displayhook.outputs = None
                nb_man.cell_complete(cell, cell_index=index)
            if failed:
                break
    finally:
        sys.stdout, sys.stderr = saved


def register(papermill) -> str:
    """Register :class:`InProcessEngine` with papermill (idempotent); returns its name."""
    from papermill.engines import Engine, papermill_engines

    class InProcessEngine(Engine):
        @classmethod
        def execute_managed_notebook(cls, nb_man, kernel_name, log_output=False, stdout_file=None,
                                     stderr_file=None, **kwargs):
            execute_cells(nb_man, stdout_file=stdout_file, stderr_file=stderr_file)

    if ENGINE_NAME not in papermill_engines._engines:
        papermill_engines.register(ENGINE_NAME, InProcessEngine)
    return ENGINE_NAME
