import io

from ganaug.progress import progress_bar


def test_a_bar_written_to_a_log_is_lines_not_carriage_returns():
    log = io.StringIO()  # not a terminal, as under nohup or in CI
    bar = progress_bar(range(500), desc="train", file=log)
    for i in bar:
        bar.set_postfix(loss=f"{i:.3f}", refresh=False)
    text = log.getvalue()
    assert "\r" not in text and text.endswith("\n")
    # a line at the start and one at the end, not one per step: the next redraw is a minute away
    assert 1 <= len(text.splitlines()) <= 3 and "500/500" in text.splitlines()[-1]
    assert progress_bar(range(3), enabled=False, file=log).disable
