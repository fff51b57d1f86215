"""Streaming detection quality: keywords spoken into a long recording, with known truth.

``speech-gru evaluate`` scores one-second clips. Live use is different: the detector
slides a window over a continuous stream, and what matters is how many spoken keywords it
reports (hit rate), how many events it reports that nobody said (false alarms per hour,
split by cause) and how long after the word it reports them (latency). This package
measures that, with no Lightning and no audio device, one module per step:

1. ``recordings``: a recording with truth, built from clips (background noise with keyword
   clips and other words inserted at known times, each at its own SNR), or the user's
   own WAV file with a truth file (``truth``: reading, checking and writing truth files);
2. ``scores``: one streaming pass through ``StreamingDetector`` that keeps the model's
   posteriors (calibration records its negative audio the same way);
3. ``matching``: the events against the truth: hits, misses, false alarms by cause,
   latency;
4. ``decisions``: decision rules replayed on the recorded posteriors at many thresholds
   (no extra model runs): the detector's own (``mean_then_threshold``, equal to
   ``StreamingDetector``, which calibration replays too) or an alternative, and the DET
   curve of each;
5. ``report``: ``evaluate`` runs steps 2-4 on a recording; its report as text, JSON and
   figures.

Imports run one way: ``truth`` imports none of the others, ``recordings`` and ``matching``
import it, ``decisions`` imports ``matching``, and ``report`` imports them all.
"""
