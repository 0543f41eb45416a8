//! Which model serves: per label, the best validation figure of its selection metric. Every
//! label's becomes `served/<label>.json`; the target's is also the snapshot's `model.json`.

use std::collections::BTreeMap;

use t0_core::{Error, Result};
use t0_project::Project;

use super::{Loaded, Scored, Variant, conformal};
use crate::features::ColumnKind;
use crate::head::Head;
use crate::metrics as m;
use crate::split::Block;
use crate::{Inputs, Metrics, Model, NOMINAL};

/// Label → index of its selected model: the best finite validation value (the first on ties).
pub(super) fn per_label(scored: &[Scored]) -> BTreeMap<String, usize> {
    let mut selected: BTreeMap<String, usize> = BTreeMap::new();
    for (k, s) in scored.iter().enumerate() {
        let (v, _) = s.primary();
        if !v.is_finite() {
            continue;
        }
        let better = |b: usize| {
            let (bv, _) = scored[b].primary();
            if s.select_by.1 { v > bv } else { v < bv }
        };
        match selected.get(&s.label) {
            Some(&b) if !better(b) => {}
            _ => {
                selected.insert(s.label.clone(), k);
            }
        }
    }
    selected
}

/// The serving model (the target's selected one) with its interval and headline figures.
pub(super) struct Serving<'a> {
    pub scored: &'a Scored,
    pub variant: &'a Variant,
    /// The variant's design, row-major.
    pub x: &'a [f64],
}

impl Serving<'_> {
    /// The target's selected model, or a gate refusal when none had a finite metric.
    pub fn pick<'a>(
        scored: &'a [Scored],
        selected: &BTreeMap<String, usize>,
        target: &str,
        variants: &'a [Variant],
        variant_x: &'a [Vec<f64>],
    ) -> Result<Serving<'a>> {
        let k = *selected.get(target).ok_or_else(|| {
            Error::Gate(format!("no model of the target {target} produced a finite validation metric"))
        })?;
        Ok(Serving::at(scored, k, variants, variant_x))
    }

    /// The `k`-th scored model, served (every leaderboard model is written as one).
    pub fn at<'a>(scored: &'a [Scored], k: usize, variants: &'a [Variant], variant_x: &'a [Vec<f64>]) -> Serving<'a> {
        let sv = &scored[k];
        Serving { scored: sv, variant: &variants[sv.variant], x: &variant_x[sv.variant] }
    }

    /// The calibration block's conformity scores: absolute residuals, ascending.
    fn calibration_scores(&self, loaded: &Loaded, target: &str) -> Vec<f64> {
        let y = loaded.frame.label(target).expect("target column");
        let d = self.variant.names.len();
        let mut scores: Vec<f64> = (0..y.len())
            .filter(|&i| loaded.blocks(target)[i] == Block::Calibration)
            .filter_map(|i| Some((y[i]? - self.scored.fitted.predict(&self.x[i * d..(i + 1) * d])).abs()))
            .collect();
        scores.sort_by(f64::total_cmp);
        scores
    }

    /// The normalised method's scale model (fitted on the training block's absolute
    /// residuals) and calibration scores |y − ŷ| / ŝ(x), ascending; `None` when no scale
    /// model can be fitted.
    fn normalized(&self, loaded: &Loaded, target: &str) -> Option<(conformal::Scale, Vec<f64>)> {
        let y = loaded.frame.label(target).expect("target column");
        let d = self.variant.names.len();
        let row = |i: usize| &self.x[i * d..(i + 1) * d];
        let abs_res = |i: usize| Some((y[i]? - self.scored.fitted.predict(row(i))).abs());
        let block = |b: Block| (0..y.len()).filter(move |&i| loaded.blocks(target)[i] == b && y[i].is_some());
        let train: Vec<usize> = block(Block::Train).collect();
        let x: Vec<f64> = train.iter().flat_map(|&i| row(i).to_vec()).collect();
        let r: Vec<f64> = train.iter().filter_map(|&i| abs_res(i)).collect();
        let scale = conformal::fit_scale(&x, d, &r)?;
        let mut scores: Vec<f64> =
            block(Block::Calibration).filter_map(|i| Some(abs_res(i)? / scale.at(row(i)))).collect();
        scores.sort_by(f64::total_cmp);
        Some((scale, scores))
    }

    /// The calibration block's scores by `method`, grouped by the levels of the categorical
    /// feature `column` (`train.mondrian`), which must be one of the model's.
    fn mondrian(
        &self,
        loaded: &Loaded,
        project: &Project,
        target: &str,
        column: &str,
        method: conformal::Method,
        norm: Option<&(conformal::Scale, Vec<f64>)>,
    ) -> Result<conformal::Mondrian> {
        let spec =
            self.variant.specs.iter().find(|c| c.column == column && matches!(c.kind, ColumnKind::Categorical { .. }));
        let Some(spec) = spec else {
            return Err(Error::config(
                project.display(t0_project::PROJECT_FILE),
                format!("train.mondrian: {column} is not a categorical feature of label {target}'s model"),
            ));
        };
        let names = &self.variant.names;
        let features: Vec<usize> =
            spec.feature_names().iter().filter_map(|f| names.iter().position(|n| n == f)).collect();
        let y = loaded.frame.label(target).expect("target column");
        let d = names.len();
        let row = |i: usize| &self.x[i * d..(i + 1) * d];
        let pairs: Vec<(usize, f64)> = (0..y.len())
            .filter(|&i| loaded.blocks(target)[i] == Block::Calibration)
            .filter_map(|i| {
                let r = (y[i]? - self.scored.fitted.predict(row(i))).abs();
                Some((
                    i,
                    match (method, norm) {
                        (conformal::Method::Normalized, Some((s, _))) => r / s.at(row(i)),
                        _ => r,
                    },
                ))
            })
            .collect();
        Ok(conformal::Mondrian::fit(column, features, names, self.x, d, &pairs))
    }

    /// The interval method of smaller mean width on the calibration block at the nominal
    /// level (both cover it there by construction): normalised only when strictly narrower.
    fn choose(
        &self,
        loaded: &Loaded,
        target: &str,
        split: f64,
        norm: Option<&(conformal::Scale, Vec<f64>)>,
    ) -> conformal::Method {
        let Some((scale, scores)) = norm else { return conformal::Method::Split };
        let d = self.variant.names.len();
        let cal: Vec<usize> =
            (0..loaded.blocks(target).len()).filter(|&i| loaded.blocks(target)[i] == Block::Calibration).collect();
        let q = conformal::halfwidth(scores, NOMINAL);
        let mean =
            cal.iter().map(|&i| q * scale.at(&self.x[i * d..(i + 1) * d])).sum::<f64>() / cal.len().max(1) as f64;
        if mean.is_finite() && mean < split { conformal::Method::Normalized } else { conformal::Method::Split }
    }

    /// The training block's distribution of every feature and of the prediction.
    fn drift_references(&self, loaded: &Loaded, target: &str) -> Vec<crate::drift::Reference> {
        let d = self.variant.names.len();
        let train: Vec<usize> =
            (0..loaded.blocks(target).len()).filter(|&i| loaded.blocks(target)[i] == Block::Train).collect();
        let mut refs: Vec<crate::drift::Reference> = (0..d)
            .map(|j| {
                let col: Vec<f64> = train.iter().map(|&i| self.x[i * d + j]).collect();
                crate::drift::Reference::fit(&self.variant.names[j], &col)
            })
            .collect();
        let pred: Vec<f64> = train.iter().map(|&i| self.scored.fitted.predict(&self.x[i * d..(i + 1) * d])).collect();
        refs.push(crate::drift::Reference::fit(crate::drift::PREDICTION, &pred));
        refs
    }

    /// The served model of `target` (its conformal intervals where it is a value label).
    pub fn model(&self, loaded: &Loaded, project: &Project, inputs: &Inputs, target: &str) -> Result<Model> {
        let (sv, variant) = (self.scored, self.variant);
        let value = matches!(sv.head, Head::Value { .. });
        let calibration_scores = if value { self.calibration_scores(loaded, target) } else { Vec::new() };
        let halfwidth = if value { conformal::halfwidth(&calibration_scores, NOMINAL) } else { 0.0 };
        let normalized = if value { self.normalized(loaded, target) } else { None };
        let interval_method = self.choose(loaded, target, halfwidth, normalized.as_ref());
        let mondrian = match (&project.def.train.mondrian, value) {
            (Some(column), true) => {
                Some(self.mondrian(loaded, project, target, column, interval_method, normalized.as_ref())?)
            }
            _ => None,
        };
        let (scale, normalized_scores) = normalized.map_or((None, Vec::new()), |(s, v)| (Some(s), v));
        let mut surface_view_defs = BTreeMap::new();
        for s in &project.def.features.feeding() {
            let vdh = t0_certify::certified_view_def(&inputs.cert, s)
                .ok_or_else(|| Error::Refused(format!("certificate records no view-definition hash for {s}")))?;
            surface_view_defs.insert(s.clone(), vdh);
        }
        let first = |b: Block| loaded.block_start(target, b).unwrap_or(i64::MAX);
        let model = Model {
            kind: sv.model.clone(),
            fusion: variant.fusion.clone(),
            target: target.to_string(),
            // The surfaces, and the embedding outputs the variant's columns come from.
            sources: inputs
                .sources
                .iter()
                .map(|s| s.output.clone())
                .filter(|o| o.starts_with("surface.") || variant.specs.iter().any(|c| &c.source == o))
                .collect(),
            columns: variant.specs.clone(),
            features: variant.names.clone(),
            predictor: sv.fitted.clone(),
            interval_halfwidth: halfwidth,
            nominal: NOMINAL,
            calibration_scores,
            interval_method,
            scale,
            normalized_scores,
            surface_view_defs,
            certify_run: inputs.cert.manifest.run_id.clone(),
            embed_run: inputs.emb.as_ref().map(|e| e.manifest.run_id.clone()),
            project: project.name().to_string(),
            valid_from: first(Block::Validation),
            test_from: first(Block::Test),
            drift: self.drift_references(loaded, target),
            head: sv.head.clone(),
            mondrian,
        };
        Ok(model)
    }

    /// The one-line summary's figures of a value label's served model.
    pub fn metrics(&self, loaded: &Loaded, target: &str, halfwidth: f64) -> Metrics {
        let sv = self.scored;
        let y = loaded.frame.label(target).expect("target column");
        let ty: Vec<f64> = sv.test_rows.iter().map(|&i| y[i].expect("present")).collect();
        let train_y: Vec<f64> =
            (0..y.len()).filter(|&i| loaded.blocks(target)[i] == Block::Train).filter_map(|i| y[i]).collect();
        let train_mean = train_y.iter().sum::<f64>() / train_y.len().max(1) as f64;
        let count = |b: Block| loaded.blocks(target).iter().filter(|x| **x == b).count();
        Metrics {
            model: sv.model.clone(),
            rows_train: count(Block::Train),
            rows_calibration: count(Block::Calibration),
            rows_valid: count(Block::Validation),
            rows_test: count(Block::Test),
            rows_embargoed: count(Block::Embargo),
            valid_rmse: sv.valid_metrics["rmse"],
            test_rmse: sv.test_metrics["rmse"],
            test_mae: sv.test_metrics["mae"],
            test_coverage: conformal::coverage(&sv.test_pred, &ty, halfwidth),
            baseline_test_rmse: m::rmse(&vec![train_mean; ty.len()], &ty),
        }
    }
}
