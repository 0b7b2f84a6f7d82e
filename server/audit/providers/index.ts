import { readSecret } from '../../config.js';
import type { ProviderConfig } from '../config.js';
import type { Provider } from './contract.js';

/** The configured provider; the AWS SDK modules load only for the AWS providers. */
export async function makeProvider(cfg: ProviderConfig): Promise<Provider> {
  switch (cfg.kind) {
    case 'command': {
      const { CommandProvider } = await import('./command.js');
      return new CommandProvider(cfg);
    }
    case 'webhook': {
      const { WebhookProvider } = await import('./webhook.js');
      return new WebhookProvider(cfg, await readSecret(cfg.secretFile, 'provider.secretFile'));
    }
    case 'aws-autoscaling': {
      const { AutoScalingProvider } = await import('./aws-autoscaling.js');
      return new AutoScalingProvider(cfg);
    }
    case 'aws-ssm-automation': {
      const { SsmAutomationProvider } = await import('./aws-ssm-automation.js');
      return new SsmAutomationProvider(cfg);
    }
    default: {
      const never: never = cfg;
      throw new Error(`unknown provider ${JSON.stringify(never)}`);
    }
  }
}
