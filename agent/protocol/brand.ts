/** Nominal typing for identifiers that are easy to swap by mistake. */
export type Brand<T, B extends string> = T & { readonly __brand: B };

/** A hex SHA-256 digest of raw bytes (64 lowercase hex characters). */
export type Sha256 = Brand<string, 'Sha256'>;
/** A `sha256:<hex>` digest of a canonical JSON document or section. */
export type Digest = Brand<string, 'Digest'>;
/** The identity of one host in the fleet (its machine-id unless overridden). */
export type HostId = Brand<string, 'HostId'>;
/** The identity of one baked image (an AMI id, a build id, ...). */
export type ImageId = Brand<string, 'ImageId'>;
