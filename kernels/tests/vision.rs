//! Image front-ends against the numpy reference, layouts, and bad frames.

mod common;

use common::{Rng, max_abs_diff, read_f32, reference, tmp_dir};
use kernels::{EfficientNetInput, KernelError, Patchify, RgbFrame};

/// A test picture: smooth gradients, hard edges (a bright rectangle and stripes) and noise, so
/// that both averaging and aliasing would show.
fn picture(width: usize, height: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed);
    let mut img = Vec::with_capacity(width * height * 3);
    for y in 0..height {
        for x in 0..width {
            let inside = x > width / 4 && x < width / 2 && y > height / 3 && y < 2 * height / 3;
            let stripe = (x / 3) % 2 == 0 && y > height * 3 / 4;
            let noise = rng.below(24) as i32 - 12;
            let r = (x * 255 / width) as i32 + noise;
            let g = (y * 255 / height) as i32 - noise;
            let b = if inside {
                250
            } else if stripe {
                10
            } else {
                128 + noise
            };
            img.extend([r, g, b].map(|v| v.clamp(0, 255) as u8));
        }
    }
    img
}

fn numpy(cmd: &str, img: &[u8], width: usize, height: usize) -> Vec<f32> {
    let dir = tmp_dir();
    let input = dir.join(format!("{cmd}-{width}x{height}.u8"));
    let output = dir.join(format!("{cmd}-{width}x{height}.f32"));
    std::fs::write(&input, img).unwrap();
    reference(&[
        cmd,
        input.to_str().unwrap(),
        &width.to_string(),
        &height.to_string(),
        output.to_str().unwrap(),
    ]);
    read_f32(&output)
}

#[test]
fn patchify_matches_numpy_and_layout() {
    let (w, h) = (640, 480);
    let img = picture(w, h, 3);
    let patchify = Patchify::default_40();
    assert_eq!(patchify.grid(w, h).unwrap(), (16, 12, 4800));
    let mut out = vec![0.0; 192 * 4800];
    patchify
        .run(&RgbFrame::packed_rgb(&img, w, h), &mut out)
        .unwrap();
    let want = numpy("patchify", &img, w, h);
    let (err, _) = max_abs_diff(&out, &want);
    assert!(err <= 1e-6, "patchify differs from numpy by {err}");
    // Layout, spelled out: patch (row 2, col 5), pixel (y 7, x 11), green.
    let (py, px, y, x, c) = (2, 5, 7, 11, 1);
    let v = img[((py * 40 + y) * w + px * 40 + x) * 3 + c];
    let at = (py * 16 + px) * 4800 + (y * 40 + x) * 3 + c;
    assert_eq!(out[at], (f32::from(v) / 255.0 - 0.5) / 0.5);
    assert!(out.iter().all(|v| (-1.0..=1.0).contains(v)));

    // RGBx with a padded stride gives the same patches.
    let stride = w * 4 + 64;
    let mut rgbx = vec![0u8; stride * h];
    for y in 0..h {
        for x in 0..w {
            rgbx[y * stride + x * 4..y * stride + x * 4 + 3]
                .copy_from_slice(&img[(y * w + x) * 3..(y * w + x) * 3 + 3]);
            rgbx[y * stride + x * 4 + 3] = 0xAB;
        }
    }
    let frame = RgbFrame {
        data: &rgbx,
        width: w,
        height: h,
        stride,
        bytes_per_pixel: 4,
    };
    let mut out4 = vec![0.0; 192 * 4800];
    patchify.run(&frame, &mut out4).unwrap();
    assert_eq!(out4, out);
}

#[test]
fn efficientnet_input_matches_numpy() {
    // Shrinking (640×480), enlarging (100×80) and a mix (300×150).
    for (w, h) in [(640, 480), (100, 80), (300, 150)] {
        let img = picture(w, h, w as u64);
        let mut prep = EfficientNetInput::new();
        let mut out = vec![0.0; EfficientNetInput::OUTPUT_LEN];
        prep.run(&RgbFrame::packed_rgb(&img, w, h), &mut out)
            .unwrap();
        let want = numpy("efficientnet", &img, w, h);
        let (err, at) = max_abs_diff(&out, &want);
        eprintln!("efficientnet {w}x{h}: max error {err:e} at {at}");
        // f32 weighted sums against f64: measured 3.6e-7; allowed 1e-5.
        assert!(err <= 1e-5, "{w}x{h}: error {err}");
        // Within the byte range's image, up to f32 rounding of the weight sums.
        assert!(out.iter().all(|v| (-1.0 - 1e-5..=1.0 + 1e-5).contains(v)));
    }
}

#[test]
fn bad_frames_are_errors() {
    let patchify = Patchify::default_40();
    let img = vec![0u8; 650 * 480 * 3];
    let mut out = vec![0.0; 192 * 4800];
    assert!(matches!(
        patchify.run(&RgbFrame::packed_rgb(&img, 650, 480), &mut out),
        Err(KernelError::NotMultiple {
            side: "width",
            got: 650,
            patch: 40
        })
    ));
    assert!(matches!(
        patchify.run(&RgbFrame::packed_rgb(&img, 640, 470), &mut out),
        Err(KernelError::NotMultiple { side: "height", .. })
    ));
    let msg = patchify.grid(650, 480).unwrap_err().to_string();
    assert!(msg.contains("650") && msg.contains("40"), "{msg}");
    // Too little data, a short stride, an odd pixel size, an empty frame, a wrong output size.
    let short = vec![0u8; 640 * 480 * 3 - 1];
    assert!(matches!(
        patchify.run(&RgbFrame::packed_rgb(&short, 640, 480), &mut out),
        Err(KernelError::Size { .. })
    ));
    let frame = RgbFrame {
        data: &img,
        width: 640,
        height: 480,
        stride: 100,
        bytes_per_pixel: 3,
    };
    assert!(matches!(
        patchify.run(&frame, &mut out),
        Err(KernelError::Size { .. })
    ));
    let frame = RgbFrame {
        data: &img,
        width: 640,
        height: 480,
        stride: 1920,
        bytes_per_pixel: 2,
    };
    assert!(matches!(
        patchify.run(&frame, &mut out),
        Err(KernelError::Config(_))
    ));
    assert!(matches!(
        patchify.run(&RgbFrame::packed_rgb(&img, 0, 480), &mut out),
        Err(KernelError::Size { .. })
    ));
    assert!(matches!(
        patchify.run(&RgbFrame::packed_rgb(&img, 640, 480), &mut out[..100]),
        Err(KernelError::Size {
            expected: 921_600,
            got: 100,
            ..
        })
    ));
    assert!(Patchify::new(0, [0.5; 3], [0.5; 3]).is_err());
    assert!(Patchify::new(40, [0.5; 3], [0.5, 0.0, 0.5]).is_err());
    assert!(Patchify::new(40, [f32::NAN; 3], [0.5; 3]).is_err());
    let mut prep = EfficientNetInput::new();
    let mut small = vec![0.0; 10];
    assert!(
        prep.run(&RgbFrame::packed_rgb(&img, 640, 480), &mut small)
            .is_err()
    );
    // Any size works for EfficientNet, even 1×1.
    let mut full = vec![0.0; EfficientNetInput::OUTPUT_LEN];
    prep.run(&RgbFrame::packed_rgb(&[255, 0, 127], 1, 1), &mut full)
        .unwrap();
    assert!(full[..50176].iter().all(|&v| v == 1.0));
    assert!(full[50176..100352].iter().all(|&v| v == -127.0 / 128.0));
    assert!(full[100352..].iter().all(|&v| v == 0.0));
}
