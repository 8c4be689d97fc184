//! Nelder–Mead: the derivative-free minimiser shared by `trace fit` (a generator fitted to a
//! real trace) and `validate --fit` (runtime parameters fitted to measurements).

/// Minimises `f` from `x0` with the standard coefficients (reflection 1, expansion 2,
/// contraction 1/2, shrink 1/2), starting from the simplex `x0` plus `step` along each axis,
/// until the simplex's values differ by less than `tolerance`. `f` returns `None` once its
/// evaluation budget is spent: the search then stops mid-iteration and keeps the points
/// evaluated so far. Returns the best point and its value, or `None` if nothing was evaluated.
pub fn nelder_mead(
    x0: &[f64],
    step: f64,
    tolerance: f64,
    mut f: impl FnMut(&[f64]) -> Option<f64>,
) -> Option<(Vec<f64>, f64)> {
    let n = x0.len();
    let mut simplex: Vec<(Vec<f64>, f64)> = Vec::with_capacity(n + 1);
    for i in 0..=n {
        let mut x = x0.to_vec();
        if i > 0 {
            x[i - 1] += step;
        }
        match f(&x) {
            Some(v) => simplex.push((x, v)),
            None => break,
        }
    }
    'search: while simplex.len() == n + 1 {
        simplex.sort_by(|a, b| a.1.total_cmp(&b.1));
        if simplex[n].1 - simplex[0].1 < tolerance {
            break;
        }
        let mut centroid = vec![0.0; n];
        for (x, _) in &simplex[..n] {
            for (c, v) in centroid.iter_mut().zip(x) {
                *c += v / n as f64;
            }
        }
        let worst = simplex[n].clone();
        let along = |t: f64| -> Vec<f64> {
            (0..n)
                .map(|i| centroid[i] + t * (worst.0[i] - centroid[i]))
                .collect()
        };
        let xr = along(-1.0);
        let Some(fr) = f(&xr) else { break };
        if fr < simplex[0].1 {
            let xe = along(-2.0);
            let Some(fe) = f(&xe) else {
                simplex[n] = (xr, fr);
                break;
            };
            simplex[n] = if fe < fr { (xe, fe) } else { (xr, fr) };
        } else if fr < simplex[n - 1].1 {
            simplex[n] = (xr, fr);
        } else {
            let xc = if fr < worst.1 {
                along(-0.5)
            } else {
                along(0.5)
            };
            let Some(fc) = f(&xc) else { break };
            if fc < worst.1.min(fr) {
                simplex[n] = (xc, fc);
            } else {
                // Shrink towards the best point.
                let best = simplex[0].0.clone();
                for entry in simplex.iter_mut().skip(1) {
                    let x: Vec<f64> = (0..n)
                        .map(|i| best[i] + 0.5 * (entry.0[i] - best[i]))
                        .collect();
                    let Some(v) = f(&x) else { break 'search };
                    *entry = (x, v);
                }
            }
        }
    }
    simplex.into_iter().min_by(|a, b| a.1.total_cmp(&b.1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_minimum_of_a_quadratic_bowl() {
        let (x, v) = nelder_mead(&[0.0, 0.0], 0.7, 1e-12, |x| {
            Some((x[0] - 1.5).powi(2) + 3.0 * (x[1] + 0.5).powi(2))
        })
        .unwrap();
        assert!(
            (x[0] - 1.5).abs() < 1e-4 && (x[1] + 0.5).abs() < 1e-4,
            "{x:?}"
        );
        assert!(v < 1e-8);
    }

    #[test]
    fn stops_when_the_budget_is_spent() {
        let mut calls = 0;
        let r = nelder_mead(&[0.0], 1.0, 0.0, |x| {
            calls += 1;
            (calls <= 5).then_some(x[0].powi(2))
        });
        assert!(r.is_some());
        assert_eq!(calls, 6, "five evaluations and the refused sixth");
    }
}
