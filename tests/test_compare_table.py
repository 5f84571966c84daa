"""`drs compare`'s table: each variant's mean ± sd over its seeds, the reference's scoring first."""

from drs.report.compare import comparison_table


def run(reference, ours, background):
    return {
        "reference_protocol": {"miou": reference},
        "miou_saliency": ours,
        "miou_threshold": 0.1,
        "coverage": {"part": 1.0, "rest_of_object": 0.5, "background": background},
    }


def test_variants_mean_and_spread_with_both_protocols():
    table = comparison_table(
        {"cam_s0": run(0.5, 0.7, 0.1), "cam_s1": run(0.7, 0.9, 0.3), "drs_s0": run(0.8, 0.6, None)}
    )
    lines = table.splitlines()
    assert lines[0].startswith("| variant | runs | mIoU (reference protocol) | mIoU (saliency bg) |")
    assert (
        lines[2]
        == "| cam | 2 | 0.600 ± 0.141 | 0.800 ± 0.141 | 0.100 ± 0.000 | 1.000 ± 0.000 | 0.500 ± 0.000 | 0.200 ± 0.141 |"
    )
    assert lines[3] == "| drs | 1 | 0.800 | 0.600 | 0.100 | 1.000 | 0.500 | n/a |"
    assert "| cam_s1 | 0.700 | 0.900 | 0.100 | 1.000 | 0.500 | 0.300 |" in lines


def test_run_without_the_reference_scoring_reads_na():
    metrics = run(0.5, 0.7, 0.1)
    del metrics["reference_protocol"]
    assert "| old | 1 | n/a | 0.700 |" in comparison_table({"old": metrics})
