"""shfan-run: live facial landmarks from a camera, stream, video, image folder or the demo."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import sys

from shfan.cli.common import (INTERRUPTED, LOGGER, Parser, add_dataclass_options, add_max_image_pixels, backend_choices,
                              build_precisions, check_model_args, entry, existing_file, fail, nonneg_int, options_from,
                              positive_int, use_max_image_pixels, writable_dir, writable_file, writable_file_or_stdout)


def build_parser():
    from shfan.runtime.pipeline import PipelineOptions

    ap = Parser(prog="shfan-run", description=__doc__, check=check_args,
                quiet_help="no stats table at exit; warnings and errors only")
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--source", default=None,
                     help="demo (default), N, /dev/videoN, v4l2:///dev/videoN, csi://N, rtsp://..., "
                          "a video file or an image folder")
    src.add_argument("--camera", type=nonneg_int, metavar="N", help="USB/V4L2 camera N (same as --source /dev/videoN)")
    ap.add_argument("--model", help="compact (default) | accurate | fast | a shfan-build folder, .onnx or .engine")
    ap.add_argument("--backend", default="auto", choices=backend_choices(runtime=True))
    ap.add_argument("--precision", choices=build_precisions(), help="precision to use from a build folder (default: the selected one)")
    add_sink_options(ap)
    ap.add_argument("--max-frames", type=positive_int, metavar="N", help="stop after N frames")
    add_max_image_pixels(ap)
    ap.add_argument("--smooth", action="store_true", help="One Euro smoothing of the landmarks")
    ap.add_argument("--detector-model", metavar="PATH", type=existing_file,
                    help="YuNet face detector .onnx (default: $SHFAN_DETECTOR_MODEL, else downloaded once "
                         "to ~/.cache/shfan)")
    add_dataclass_options(ap, PipelineOptions, ["max_faces", "min_face", "min_score", "redetect_every", "max_misses"])
    ap.add_argument("--stats-json", metavar="FILE", type=writable_file, help="write per-stage latency and FPS as JSON at exit")
    add_dataclass_options(ap, PipelineOptions, ["threads"])
    return ap


def add_sink_options(ap) -> None:
    """One option per output sink (runtime/sinks: --headless, --output, --jsonl, --mcap, ...),
    with the options of its settings after it."""
    from shfan.runtime import sinks

    for spec in sinks.specs():
        if spec.kind == "switch":
            ap.add_argument(spec.flag, action="store_true", help=spec.help)
        else:
            kind = {"file": writable_file, "file_or_stdout": writable_file_or_stdout, "dir": writable_dir}
            ap.add_argument(spec.flag, metavar=spec.metavar, help=spec.help,
                            type=kind.get(spec.kind) or _parsed_by(spec))
        if spec.settings is not None:
            add_dataclass_options(ap, spec.settings, [f.name for f in dataclasses.fields(spec.settings)])


def _parsed_by(spec):
    """An argparse type from a sink's own parser (ValueError -> a usage error naming the option)."""
    def parse(text):
        try:
            return spec.parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    parse.__name__ = spec.kind
    return parse


def open_sinks(args, into) -> None:
    """Each sink the options ask for, appended to `into` (a SinkSet) as it is made, so that the ones
    made before a failing one are closed too."""
    from shfan.runtime import sinks

    for spec in sinks.specs():
        value = getattr(args, spec.flag.lstrip("-").replace("-", "_"))
        if value is None:  # the option was not given
            continue
        settings = options_from(spec.settings, args) if spec.settings is not None else None
        sink = spec.open(value, settings)
        if sink is not None:
            into.add(sink)


def check_sink_settings(ap, args) -> None:
    """Each sink's settings in range (e.g. --mcap-jpeg-quality 1-100): a usage error, before the
    model loads."""
    from shfan.errors import ShfanError
    from shfan.runtime import sinks

    for spec in sinks.specs():
        if spec.settings is not None:
            try:
                options_from(spec.settings, args)
            except ShfanError as exc:
                name = str(exc).split(" ", 1)[0]
                ap.error(str(exc).replace(name, "--" + name.replace("_", "-"), 1))


class _Stop:
    """Ctrl-C / SIGTERM end the run cleanly (outputs finalised, stats printed)."""

    def __init__(self):
        self.requested = False
        self.previous = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self.previous[sig] = signal.signal(sig, self._handler)
            except ValueError:  # not the main thread (embedded use)
                pass

    def close(self):
        """The handlers as they were (main() may run again in the same process)."""
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def _handler(self, *_):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True


def _source_uri(args) -> str:
    if args.camera is not None:
        return str(args.camera)
    return args.source or "demo"


def check_args(ap, args):
    """Usage checks over several options and the file-system (each value's range is its type's)."""
    from pathlib import Path

    if args.output and Path(args.output).suffix.lower() not in (".mp4", ".mov", ".m4v", ".avi", ".mkv"):
        ap.error(f"--output {args.output}: unsupported video type; use .mp4 or .avi")
    check_model_args(ap, args, "a shfan-build folder, .onnx or .engine")
    check_sink_settings(ap, args)
    if args.threads is not None:
        from shfan.runtime.pipeline import available_cores

        cores = available_cores()
        if args.threads > cores:
            logging.getLogger(LOGGER).warning(f"--threads {args.threads} capped at the {cores} cores available")
            args.threads = cores


@entry
def main(argv=None):
    ap = build_parser()
    args = ap.parse_args(argv)  # check_args ran
    use_max_image_pixels(args.max_image_pixels)
    from shfan.errors import ShfanError
    from shfan.runtime import sinks
    from shfan.runtime.pipeline import Pipeline, PipelineOptions
    from shfan.runtime.sources import FrameSource

    uri = _source_uri(args)
    try:
        source = FrameSource(uri)  # parse first: a bad source is a usage error, found before the model loads
    except ShfanError as exc:
        ap.error(str(exc))
    pipeline = stop = None
    outs = sinks.SinkSet()
    errors = []
    interrupted = False
    try:
        options = options_from(PipelineOptions, args, running_mode="video")  # the options of the same names
        pipeline = Pipeline(args.model, args.backend, args.precision, options=options,
                            detector_model=args.detector_model)
        open_sinks(args, outs)  # files checked now, opened at the first frame
        stop = _Stop()  # from here on Ctrl-C / SIGTERM end the frame loop (outputs finished), not the program
        for result in pipeline.stream(source, max_frames=args.max_frames):
            if not outs.write(result, pipeline.stats.fps()):
                break  # the window was closed
            if stop.requested:
                break
    except ShfanError as exc:
        errors.append(str(exc))
    except KeyboardInterrupt:
        interrupted = True
    finally:
        errors += outs.close(keep=True)  # frames so far: whole files
        for close in (pipeline and pipeline.close, stop and stop.close):
            if close:
                try:
                    close()
                except ShfanError as exc:
                    errors.append(str(exc))
    frames = pipeline.stats.frames if pipeline is not None else 0
    if frames:
        summary = pipeline.stats.summary(source=uri, backend=getattr(pipeline, "backend_name", None),
                                         model=str(args.model or "default"))
        if args.stats_json:
            try:
                pipeline.stats.write_json(args.stats_json, summary)
            except ShfanError as exc:
                errors.append(str(exc))
        if not args.quiet:
            from rich.console import Console

            Console(stderr=True).print(pipeline.stats.table(summary))
    if errors:
        fail(errors[0])
    if not frames:
        if interrupted or (stop and stop.requested):
            fail("interrupted before the first frame", INTERRUPTED)
        fail(f"no frame could be read from {uri} (unreadable images, or an empty video)")
    if interrupted or (stop and stop.requested):  # like every tool: 130, after the outputs were finished whole
        fail(f"interrupted after {frames} frames; the outputs hold them, complete", INTERRUPTED)
    return 0


if __name__ == "__main__":
    sys.exit(main())
