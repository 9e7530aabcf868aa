//! IncrementalAlterConfigs and legacy AlterConfigs on the controller: resource
//! checks, then [`crate::configs`] computes and validates the new explicit
//! set, whose difference to the current one is committed as `Config` records.

use super::*;

impl QuorumController {
    fn check_config_resource(&self, image: &MetadataImage, resource: &ConfigResource) -> Result<(), ControllerError> {
        match resource {
            ConfigResource::Topic(name) if name.is_empty() => {
                Err(ControllerError::InvalidRequest("Default topic resources are not allowed.".to_string()))
            }
            ConfigResource::Topic(name) if !image.topics.contains_key(name) => {
                Err(ControllerError::UnknownTopicOrPartition(format!("The topic '{name}' does not exist.")))
            }
            ConfigResource::Broker(name) if !name.is_empty() && name.parse::<i32>().map_or(true, |id| id < 0) => {
                Err(ControllerError::InvalidRequest(format!("Illegal broker ID {name}")))
            }
            _ => Ok(()),
        }
    }

    fn current_configs(image: &MetadataImage, resource: &ConfigResource) -> BTreeMap<String, String> {
        let map = match resource {
            ConfigResource::Topic(_) => &image.topic_configs,
            ConfigResource::Broker(_) => &image.broker_configs,
        };
        map.get(resource.name()).cloned().unwrap_or_default()
    }

    /// The leader's side of [`QuorumController::incremental_alter_configs`].
    pub(super) async fn incremental_alter_configs_local(
        &self,
        resource: ConfigResource,
        ops: Vec<AlterConfigOp>,
        validate_only: bool,
    ) -> Result<(), ControllerError> {
        let guard = self.lock().await?;
        let image = self.image();
        self.check_config_resource(&image, &resource)?;
        let current = Self::current_configs(&image, &resource);
        let next = apply_incremental(&resource, &current, &ops)?;
        validate_configs(&resource, &next)?;
        if !validate_only {
            self.commit(&guard, diff_records(&resource, &current, &next)).await?;
        }
        Ok(())
    }

    /// The leader's side of [`QuorumController::alter_configs`].
    pub(super) async fn alter_configs_local(
        &self,
        resource: ConfigResource,
        configs: Vec<(String, Option<String>)>,
        validate_only: bool,
    ) -> Result<(), ControllerError> {
        let guard = self.lock().await?;
        let image = self.image();
        self.check_config_resource(&image, &resource)?;
        let current = Self::current_configs(&image, &resource);
        let next = apply_replacement(&configs)?;
        validate_configs(&resource, &next)?;
        if !validate_only {
            self.commit(&guard, diff_records(&resource, &current, &next)).await?;
        }
        Ok(())
    }
}
