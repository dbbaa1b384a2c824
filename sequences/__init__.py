"""Lab sequences and their analyses: the framework a sequence author builds on
(`LabSequence`, `Step`, `DatasetParameter`, `Analysis`, `CurveAnalysis`), the shared
fitting layer (`sequences.fitting`, docs/fitting.md), stored runs, and the calibration sequences.

Transducer characterization is in `qnetlab.sequences.transducer`, time-tag processing in
`qnetlab.sequences.timetags`, the calibration graph in `qnetlab.sequences.calibration`.
"""

from .analysis import (
    Analysis,
    AnalysisResult,
    FitValue,
    Reason,
    Verdict,
    analyze_run,
    stored_analysis,
)
from .curve_analysis import CurveAnalysis
from .data import StoredRun, load_run, open_database
from .detectors import (
    DarkCountScan,
    DarkCountScanOptions,
    EfficiencyBiasScan,
    EfficiencyBiasScanOptions,
)
from .fitting import (
    Fit,
    PeakFit,
    chi2_bound,
    chi2_p_value,
    fit_peak,
    inflation_factor,
    poisson_ml,
    poor_fit,
    scale_covariance,
    weighted_least_squares,
)
from .framework import DatasetParameter, LabSequence, RunResult, Step
from .registry import parse_options, sequence_class, sequence_names
from .report import Report, ReportSection
from .resonance import MicrowaveResonanceScan, ResonanceScanOptions
from .timing import (
    AwgSkewCalibration,
    AwgSkewOptions,
    TaggerDelayCalibration,
    TaggerDelayOptions,
)

__all__ = [
    "Analysis",
    "AnalysisResult",
    "AwgSkewCalibration",
    "AwgSkewOptions",
    "CurveAnalysis",
    "DarkCountScan",
    "DarkCountScanOptions",
    "DatasetParameter",
    "EfficiencyBiasScan",
    "EfficiencyBiasScanOptions",
    "Fit",
    "FitValue",
    "LabSequence",
    "MicrowaveResonanceScan",
    "PeakFit",
    "Reason",
    "Report",
    "ReportSection",
    "ResonanceScanOptions",
    "RunResult",
    "Step",
    "StoredRun",
    "TaggerDelayCalibration",
    "TaggerDelayOptions",
    "Verdict",
    "analyze_run",
    "chi2_bound",
    "chi2_p_value",
    "fit_peak",
    "inflation_factor",
    "load_run",
    "open_database",
    "parse_options",
    "poisson_ml",
    "poor_fit",
    "scale_covariance",
    "sequence_class",
    "sequence_names",
    "stored_analysis",
    "weighted_least_squares",
]
