/** The drift version, reported in manifests and by `drift --version`. */
export const VERSION = '0.1.0';
