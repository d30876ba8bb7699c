import { z } from 'zod';

/**
 * The service kinds a profile can grant, each with the settings it accepts. Provisioning treats
 * services as data (kind + settings), so a new kind is one entry here, not a new workflow.
 */
export const SERVICE_KINDS = {
  phone: z.strictObject({ model: z.string().min(1), template: z.string().optional() }),
  voicemail: z.strictObject({ pinPolicy: z.string().optional(), template: z.string().optional() }),
  extensionMobility: z.strictObject({ profile: z.string().optional() }),
  singleNumberReach: z.strictObject({ destination: z.enum(['mobile', 'phone']).default('mobile') }),
  webex: z.strictObject({ licences: z.array(z.string().min(1)).default([]) }),
  teams: z.strictObject({
    licences: z.array(z.string().min(1)).default([]),
    policies: z.record(z.string(), z.string()).default({}),
  }),
  group: z.strictObject({ name: z.string().min(1) }),
  licence: z.strictObject({ sku: z.string().min(1) }),
} as const;

export type ServiceKind = keyof typeof SERVICE_KINDS;

export interface ServiceSpec {
  readonly kind: ServiceKind;
  readonly settings: Readonly<Record<string, unknown>>;
}

export function isServiceKind(kind: string): kind is ServiceKind {
  return Object.hasOwn(SERVICE_KINDS, kind);
}

/** Identifies a service within a user's services: one phone, but one entry per group or licence. */
export function serviceKey(service: ServiceSpec): string {
  switch (service.kind) {
    case 'group':
      return `group:${String(service.settings.name)}`;
    case 'licence':
      return `licence:${String(service.settings.sku)}`;
    default:
      return service.kind;
  }
}

/** The tenant licences (SKU part numbers) a service needs. */
export function licencesOf(service: ServiceSpec): string[] {
  switch (service.kind) {
    case 'teams':
    case 'webex':
      return [...((service.settings.licences as string[] | undefined) ?? [])];
    case 'licence':
      return [String(service.settings.sku)];
    default:
      return [];
  }
}

/** A profile's services as a user holds them: keyed, and the phone on the user's line (when they have one). */
export function servicesOnLine(services: readonly ServiceSpec[], number: string | null): { key: string; kind: ServiceKind; settings: Readonly<Record<string, unknown>> }[] {
  return services.map((service) => ({
    key: serviceKey(service),
    kind: service.kind,
    settings: { ...service.settings, ...(service.kind === 'phone' && number ? { line: number } : {}) },
  }));
}
